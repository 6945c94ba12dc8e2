"""skinlesion: dermoscopic skin-lesion classifiers on HAM10000. Research use only; not a medical device."""
__version__ = "0.1.0"
