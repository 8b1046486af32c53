"""Task definitions: data, loss and metrics of classification, copy, repeat copy, char-LM and two RNNs (no loops)."""
