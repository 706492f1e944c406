"""LoRA supervised fine-tuning: the train stage from plan to saved adapter (fine_tune), the model for training
(backends), the lab's trainer with token-budgeted micro-batches (trainer, microbatch, rank_balance), per-example
attention and loss masking, checkpoints and resume, progress, and data-parallel launch (distributed).

Imports: lab.core, lab.data, lab.model."""
