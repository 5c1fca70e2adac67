"""The interactive attention explorer: every head of every layer, at every logged step.

log.py holds the side data the ``attention`` callback writes (``<run>/attention_log/``: the
probe's tokens and every head's weights per step, and the head scores beside them) and the
compact binary the browser reads; plugin.py is the TensorBoard plugin (its "attention" tab, a
dynamic plugin through the ``tensorboard_plugins`` entry point); page.py writes the same view
as one self-contained HTML file (``attnlab attend``, ``attnlab.show_attention``). static/ is
the one frontend both serve: explorer.js and explorer.css, and index.js, the plugin's entry.
"""
