"""`mlpbench loader`: the classic training loop end to end (FashionMNIST, DataLoader, copy, step)."""
