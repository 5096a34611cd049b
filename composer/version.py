"""The composer's version, recorded in every recipe (composition.json) it writes."""

VERSION = "0.1.0"
