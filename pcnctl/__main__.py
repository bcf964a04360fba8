from pcnctl.entry import main

main()
