"""Processes and ranks: starting them (DeepSpeed's launcher), reading their layout from any launcher,
the process group, the first error of a job, and the one way a rank ends."""
