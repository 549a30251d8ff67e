"""Record sources for tasks defined outside Python.

``base``: per-split files, hold-outs, row checks and the bad-record policy;
``tabular``: JSONL / CSV / TSV / parquet; ``hf_disk``: ``datasets`` saved to
disk; ``niv2``: Natural-Instructions v2 task JSON; ``flan_jsonl``: Flan
collection exports; ``promptsource``: ``templates.yaml`` files; ``task_yaml``:
the user's task and mixture YAML files.
"""
