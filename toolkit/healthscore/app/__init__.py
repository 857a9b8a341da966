"""healthscore.app layer."""
