"""The tasks run on a trained model, one module each and one ``attnlab <verb>`` each (attnlab.cli):
generate.py, eval.py, export.py (and ``attnlab.load``), attend.py."""
