from pcnctl.cli import main

main()
