"""Generic driver for MATLAB structs of time-normalised cycles with a catalogue-declared
layout."""
