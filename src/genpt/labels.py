"""The label value that losses skip: padding and unscored positions (PyTorch's and Hugging Face's -100)."""

IGNORE_INDEX = -100
