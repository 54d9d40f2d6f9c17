"""Training DDP: data (``data``), the SGD recipe (``schedule``), resumable checkpoints
(``state``) and the loop tying them together (``loop``)."""
