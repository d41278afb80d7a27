"""MTP draft heads (`--speculative-algorithm NEXTN/EAGLE/EAGLE3` with `--attention-backend amd`):
the DeepSeek-style NextN module in torch (`nextn_head.py`), teacher traces and
agreement (`teacher.py`), writing a head into a checkpoint (`checkpoint.py`),
SGLang's acceptance figures read from its responses (`acceptance.py`), and EAGLE3 heads for
models without MTP layers (`eagle3_head.py`, `eagle3_train.py`, `cli.py`: sglang-amd mtp train)."""
