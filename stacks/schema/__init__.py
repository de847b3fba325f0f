"""What the configuration files may say, checked before anything is written.

Pure: no module here reads the database, so the models, the importer and
the admin's change gate all build on it.

==================  =========================================================
``keys``            every key of the files and the defaults
``loader``          YAML that remembers the line of every key; :class:`Issue`
``parser``          ``stacks.yaml`` checked into model-shaped data
``services``        rules for a service's fields (also for one edited alone)
``topology``        rules for volumes, networks, stacks and their links
``environments``    rules for environments, overrides, plans and ports
``values``          pure transforms: ports, healthchecks, merges, subnets
``policies``        ``retention-policies.yaml`` and ``backup-strategies.yaml``
``common``          patterns and small helpers of the rules
==================  =========================================================
"""
