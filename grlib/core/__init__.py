"""What every layer of grlib uses: where files live (`config`), files written whole (`files`), seeds (`rng`),
guards against bad settings and diverged training (`guards`), progress bars (`progress`), the share of the cores
(`threads`) and the cache of trained models (`checkpoints`)."""
