"""The training loop and its state: the run directory and its lock, the DeepSpeed engine, the loss, the
data loader, the checkpointer (and export, which reads checkpoints), TensorBoard."""
