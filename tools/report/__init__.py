"""The review report of a run: `report.html` in its run folder.

    clipdedup report out/<run_id> [--seed 0] [--bands 0.999,0.98,0.95]   # an existing run
    (every `clipdedup run` / `mine` writes it too, before publishing)

Stages:

1. `sample`: the run's tables read batch by batch into bounded summaries:
   the pair-score histogram, a seeded sample of pairs per score band, the
   largest groups (a seeded sample of members, keeper first), errors by
   reason with examples, byte-copy groups, files that did not end cleanly;
2. `thumbnails`: a Beam job on the run's own runner reads only the sampled
   records from their inputs (`transforms.thumbnails.ReadThumbnails`);
3. SSIM of each sampled pair (`tools.compare`, on the greyscale copies);
4. `page`: one self-contained HTML file, written as `report.html.tmp` and
   renamed, so a reader never sees half a page.

The page's size is bounded by `ReportSettings`, whatever the run's size.
"""
