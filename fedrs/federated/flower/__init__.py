"""The Flower engine: one fedrs run on a SuperLink and one SuperNode per client (``pip install
"fedrs[flower]"``; how to run it: ``docs/flower.md``; the Flower app folder: ``flower_app/``).

* ``task.py``: the app settings (``params-file``, ``out-dir``, ...) and the client of a SuperNode's
  ``partition-id``, built by the same ``prepare_run`` as the in-process engine;
* ``client_app.py``: the ``ClientApp`` (train / evaluate) around the shared ``client_update`` /
  ``client_evaluate``; private tensors stay in ``context.state``;
* ``server_app.py``: the ``ServerApp``: ``run_experiment`` with :class:`FlowerEngine`, the
  in-process engine whose client loops are Flower messages.

Nothing here re-implements training, aggregation, evaluation or the run folder: the apps only
move tensors. Importing this package does not import ``flwr``.
"""
