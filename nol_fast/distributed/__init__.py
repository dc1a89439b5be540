"""Distributed training: parallelism strategies and process-group set-up."""
