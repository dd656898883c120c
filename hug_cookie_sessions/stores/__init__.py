"""Session stores: one module per backend, all behind the protocol in ``base``."""
