"""Motion tokens: residual VQ, the conv tokenizer, the streaming token decoder."""
