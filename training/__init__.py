"""The training machinery both loops share: setup and run folder, validation loss,
objectives, data curriculum, several processes, precision and compiling."""
