"""Run every TokenRec stage on a named dataset: data, LightGCN, MQ-Tokenizers, LLM fine-tuning and the test scores.

This is the same job as the `tokenrec run` command. Offline, with a local copy of the data and of t5-small's
tokenizer and config (no weights, so the backbone starts from random weights):

```bash
python examples/run_tokenrec.py \
    --dataset lastfm \
    --data_dir path/to/LastFM \
    --backbone path/to/t5-small \
    --output_dir outputs/tokenrec-lastfm
```

Online, `--backbone google-t5/t5-small` (the default) starts from the pretrained weights, and without `--data_dir`
the dataset is downloaded into the Hugging Face cache. Add `--preset cpu-small` for a backbone that trains several
times faster on a CPU. Running the command again continues from the last finished stage or checkpoint.
"""

import sys

from tokenrec_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
