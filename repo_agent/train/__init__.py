"""Fine-tuning: local LoRA with TRL + PEFT (local.py) and hosted on Together AI (together.py)."""
