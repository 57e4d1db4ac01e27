"""The ``podium`` command: argument parsing and output. Each subcommand calls either the
composition root (``serve``) or a client over HTTP; none reaches into the server's parts."""
