"""healthscore.core layer."""
