"""Models: load or build a model + tokenizer, special tokens, freezing."""
