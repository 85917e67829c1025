"""Groups, keepers and the keep/drop manifest as Beam transforms (the mine job's last stages).

- `records.ReadRecords`, `records.FindRepeatedIds`: ids + metadata, keeper sort keys;
- `copies.ClassifyByteCopies`: byte copies -> edges / exact_copy members / orphans;
- `components.ConnectedComponents`: large-star / small-star labels;
- `keepers.AssignKeepers`: the greedy non-chaining keepers per component;
- `rank.DenseRank`: group_id and component_id over the run;
- `lines.ManifestLines`: keep.txt / drop.txt lines;
- `stats.GroupStats`: counts and the conservation check;
- `build.BuildGroups`: all of it, from records, pairs and byte copies.
"""
