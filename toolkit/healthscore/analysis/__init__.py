"""healthscore.analysis layer."""
