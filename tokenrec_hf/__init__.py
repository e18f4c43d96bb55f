"""tokenrec_hf: TokenRec (ID tokenization and generative retrieval for LLM-based recommendation) for Hugging Face."""

from .version import __version__

__all__ = ["__version__"]
