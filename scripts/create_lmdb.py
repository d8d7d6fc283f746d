"""``python -m kdplugins.create_lmdb`` (``kd-create-lmdb``) under its former name, for the commands written in the
option files: paired HR/LR LMDBs with ``meta_info.txt`` from image folders (``--help`` for the options)."""
from kdplugins.create_lmdb import command_line, main  # noqa: F401  (main: the tests call it in process)

if __name__ == '__main__':
    command_line()
