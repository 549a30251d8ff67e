"""The ``flanforge`` subcommands, one thin module each: ``add_arguments(parser)`` and ``run(args) -> int``
(parse, validate, call one function of ``training/``, ``evaluation/`` or ``mixtures/``)."""
