"""vlshield: backdoor poisoning attacks and training-time defenses for vision-language models."""

__version__ = "0.1.0"
