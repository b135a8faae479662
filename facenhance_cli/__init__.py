"""facenhance: 64x64 facial-expression videos to 192x192 with a recurrent conditional DDPM (FacEnhance)."""

__version__ = "0.1.0"
