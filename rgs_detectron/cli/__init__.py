"""The command-line programs: every module here is one command with a ``main(argv)``.

Run any of them as ``python -m rgs_detectron.cli.NAME`` (or with its console script after
``pip install``, or ``python tools/NAME.py`` from a checkout). What they share (exit
status, config and device set-up, the training launcher) is library code in
``rgs_detectron.engine.defaults`` and ``rgs_detectron.engine.launch``; the conventions, as in
Detectron2's own tools:

* ``--config-file FILE`` and trailing ``KEY VALUE`` config overrides (positional);
* ``--output`` is always a folder;
* exit status 0 when the work is done, 1 when it failed (a missing or corrupt input,
  incompatible weights, a full disk, a failed verification), 2 for a usage error (bad
  command line, config file or config value); a user error prints one line saying what
  is wrong and how to fix it, never a traceback.
"""
