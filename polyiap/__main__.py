from polyiap.cli.app import main

main()
