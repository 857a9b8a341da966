"""healthscore.viz layer."""
