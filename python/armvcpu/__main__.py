from .tools.cli import program

program()
