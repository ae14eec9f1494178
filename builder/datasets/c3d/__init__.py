"""Generic driver for C3D files with a catalogue-declared channel and event mapping (the demo,
Plug-in Gait exports)."""
