"""After a run: a checkpoint's ZeRO shards as a Hugging Face model directory (``flanforge export``, and the
weights ``flanforge eval`` scores), the weights streamed into sharded safetensors and the tokenizer beside."""
