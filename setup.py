"""Packaging for tokenrec_hf.

torch is pinned to one exact release: a looser range lets pip resolve a multi-GB CUDA build on machines
where only the CPU wheel is wanted.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "tokenrec_hf" / "version.py").read_text()).group(1)

INSTALL_REQUIRES = [
    "torch==2.13.0",
    "transformers>=5.0,<6",
    "tokenizers>=0.22",
    "sentencepiece>=0.2",
    "safetensors>=0.4",
    "huggingface_hub>=1.0",
    "datasets>=3.0",
    "evaluate>=0.4",
    "accelerate>=1.0",
    "peft>=0.17",
    "numpy>=1.26",
    "pandas>=2.0",
    "pyarrow>=15",
    "scipy>=1.11",
    "tqdm>=4.66",
    "matplotlib>=3.8",
]

EXTRAS = {
    "test": ["pytest>=8", "pytest-timeout>=2.3"],
    "quality": ["ruff>=0.6"],
}
EXTRAS["dev"] = sorted({requirement for group in EXTRAS.values() for requirement in group})

setup(
    name="tokenrec_hf",
    version=VERSION,
    description="TokenRec for Hugging Face: ID tokenization and generative retrieval for LLM-based recommendation",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tokenrec_hf", "tokenrec_hf.*"]),
    package_data={"tokenrec_hf": ["metrics/*/*.py", "templates/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tokenrec=tokenrec_hf.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
