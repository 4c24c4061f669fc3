from cma_builder.cli import main

main()
