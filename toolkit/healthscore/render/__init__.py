"""healthscore.render layer."""
