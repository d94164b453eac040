"""Model files: the Hugging Face Hub listing, downloads, models on disk, will-it-fit."""
