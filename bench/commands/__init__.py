"""One module per sub-command of ``mlpbench`` (named as the command), each with ``add_arguments(parser)`` and
``command(args) -> int``; ``case_flags`` holds the case flags they share. Only ``bench.cli`` imports this folder.
"""
