"""The most the nbgrader plugin unpacks from one archive (``nbgrader_plugin.archive.MAX_MEMBERS``,
``MAX_UNPACKED_BYTES``): the settings may not go higher (``config``), and ``ArchiveLimits``
lowers anything higher, so every archive the exchange accepts is one the plugin unpacks."""

MAX_MEMBERS_CEILING = 1_000_000
MAX_UNPACKED_CEILING = 1024**4
