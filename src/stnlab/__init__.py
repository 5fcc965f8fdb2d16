"""stnlab: experiments with Spatial Transformer Networks (Jaderberg et al., NIPS 2015)."""

__version__ = "0.1.0"
