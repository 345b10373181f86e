"""Reports: figures (PNG) and pages (HTML, Markdown) from results; no training happens here."""
