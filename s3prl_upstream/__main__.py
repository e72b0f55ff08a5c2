"""`python -m s3prl_upstream ARGS` = `atst-s3prl ARGS`."""
from .launcher import main

main()
