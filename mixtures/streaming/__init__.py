"""From task records to packed rows: webdataset shards of the records and their manifest, the sampling
of the global example stream, the stream itself (render, tokenise, pack) and its resumable state."""
