"""Reading and writing records: JSONL streams, atomic output directories, object stores."""
