"""pcnctl: incident response for Edifice school ENTs."""

__version__ = "0.1.0"
