"""MTP draft heads (`--speculative-algorithm NEXTN/EAGLE` with `--attention-backend amd`):
the DeepSeek-style NextN module in torch (`nextn_head.py`), teacher traces and
agreement (`teacher.py`), writing a head into a checkpoint (`checkpoint.py`),
SGLang's acceptance figures read from its responses (`acceptance.py`)."""
