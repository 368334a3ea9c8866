"""Core plugins: the upstream dev/file/blob/sampling nodes with the same config keys."""
